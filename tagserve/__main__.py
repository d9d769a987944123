from tagserve.cli import main

raise SystemExit(main())
