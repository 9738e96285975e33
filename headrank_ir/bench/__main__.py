import sys

from headrank_ir.bench.cli import main

sys.exit(main())
