from claudegate_gateway.cli import main

raise SystemExit(main())
