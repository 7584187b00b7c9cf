from paas_config.main import main

raise SystemExit(main())
