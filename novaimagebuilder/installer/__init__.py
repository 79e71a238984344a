"""The installer's media, its remastered ISO or initrd, its config drive, and
the watch of its screen."""
