from git_sync.main import main

raise SystemExit(main())
