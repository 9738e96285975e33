import sys

from headrank_ir.train.cli import main

sys.exit(main())
