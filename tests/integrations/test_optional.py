"""The adapters are optional: without their framework the package still imports, and the
adapter's own import names the extra to install."""

from __future__ import annotations

from tests._helpers import python_stdout


def test_package_imports_without_trl_and_the_adapter_names_the_extra():
    code = (
        "import sys\n"
        "sys.modules['trl'] = None  # as if TRL were not installed\n"
        "import inforeg, inforeg.rl, inforeg.integrations\n"
        "assert inforeg.integrations.ADAPTERS == {'trl': 'inforeg[trl]'}\n"
        "try:\n"
        "    import inforeg.integrations.trl\n"
        "except ImportError as err:\n"
        "    print(err)\n"
    )
    out = python_stdout(code)
    assert out == "inforeg.integrations.trl needs TRL: pip install 'inforeg[trl]'"


def test_import_inforeg_loads_no_adapter():
    code = (
        "import sys, inforeg\nprint([m for m in sys.modules if 'integrations' in m or m == 'trl'])"
    )
    out = python_stdout(code)
    assert out == "[]"
