"""The built-in corpora, shipped inside the package as `playground.corpora` (pyproject maps this
folder there) and read with importlib.resources. All written or generated for this project."""
