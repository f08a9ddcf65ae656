from chestx.cli import main

raise SystemExit(main())
