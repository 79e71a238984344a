"""Install scripts: kickstart, preseed, autoinstall."""
