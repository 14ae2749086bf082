from vnp.cli import main

raise SystemExit(main())
