import sys

from bintut.cli import main

sys.exit(main())
