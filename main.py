"""Launch GPT Playground: `python main.py`."""

import sys

from playground.ui.app import main

if __name__ == "__main__":
    sys.exit(main())
