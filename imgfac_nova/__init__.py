"""imgfac-nova: the Image Factory front end (templates, parameters, store,
plugins, CLI)."""
