"""Registry records, one module per family (each defines ``RECORDS``)."""
