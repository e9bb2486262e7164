import sys

from shendu.cli import main

sys.exit(main())
