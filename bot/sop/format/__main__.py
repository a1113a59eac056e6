"""`python -m bot.sop.format` prints the JSON Schema of SOP files (`sops/schema.json`)."""

import sys

from ._sop import json_schema_text

sys.stdout.write(json_schema_text())
