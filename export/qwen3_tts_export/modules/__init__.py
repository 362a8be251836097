"""Export-friendly torch modules: flat tensors in and out, weights taken from the official state dict.

Each module reproduces one official component's arithmetic (see `SPEC.md` in the reference) in code short enough to
read in one sitting; `export.py` traces them and checks every graph against the official classes.
"""
