from gocram.cli import main

raise SystemExit(main())
