from paas_runtime.main import main

raise SystemExit(main())
