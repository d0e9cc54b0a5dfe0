import sys

from synctalk_lib.cli import main

sys.exit(main())
