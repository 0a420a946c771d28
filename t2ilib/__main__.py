"""``python -m t2ilib ...``: the course's command line (see :mod:`t2ilib.apps.cli`)."""

from t2ilib.apps.cli import main

raise SystemExit(main())
