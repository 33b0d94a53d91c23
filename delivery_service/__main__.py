from delivery_service.cli import main

raise SystemExit(main())
