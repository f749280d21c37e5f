import sys

from consumer.cli.main import main

sys.exit(main())
