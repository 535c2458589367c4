from nvmet_p2p.cli import main

raise SystemExit(main())
