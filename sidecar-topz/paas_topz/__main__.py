from paas_topz.main import main

raise SystemExit(main())
