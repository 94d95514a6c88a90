"""The Django example shop; start a collector, then, from the repository root::

journeykit collector serve --data-dir ./data
python examples/django_shop/manage.py runserver 127.0.0.1:8000
"""

import os
import sys
from pathlib import Path

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # django_shop, flask_shop
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "django_shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
