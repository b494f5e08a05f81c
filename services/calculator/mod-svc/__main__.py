# Entry point of mod-svc, both as the packed build/bin/mod-svc (python -m zipapp) and
# from the source tree: python3 services/calculator/mod-svc --help
import sys

from modsvc.main import main

sys.exit(main())
