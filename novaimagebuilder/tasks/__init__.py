"""The steps of a build, one TaskFlow task each, grouped by what they
touch: :mod:`install` (media, installer, JEOS) and :mod:`guest` (the
customization guest and the image); :mod:`names` keeps their names."""
