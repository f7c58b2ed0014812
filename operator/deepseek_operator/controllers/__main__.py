"""``python -m deepseek_operator.controllers [run flags]`` runs the operator."""

import sys

from deepseek_operator.controllers import run

sys.exit(run(sys.argv[1:]))
