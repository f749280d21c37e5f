import sys

from consumer.devkit.broker.process import main

sys.exit(main())
