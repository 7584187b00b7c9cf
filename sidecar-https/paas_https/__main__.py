from paas_https.main import main

raise SystemExit(main())
