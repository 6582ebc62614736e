"""The app's panes, one a module."""
