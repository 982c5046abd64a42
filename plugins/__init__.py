"""Built-in GDL Studio plugins, one folder each (see CONTRIBUTING in the README)."""
