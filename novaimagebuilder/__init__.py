"""novaimagebuilder: drives one image build inside an OpenStack cloud."""
