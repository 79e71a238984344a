"""Moving and describing image bytes: Glance transfers, formats, OVA, the JEOS
cache, image properties."""
