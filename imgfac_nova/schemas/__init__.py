"""RELAX NG schemas shipped with imgfac-nova (package data)."""
