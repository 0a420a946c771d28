"""``python -m t2ilib ...``: the course's command line (see :mod:`t2ilib.cli`)."""

from t2ilib.cli import main

raise SystemExit(main())
