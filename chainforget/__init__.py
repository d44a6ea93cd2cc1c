"""chainforget: a plugin-based benchmark of forgetting (and biased forgetting) under chained fine-tuning."""

import warnings

__version__ = "0.1.0"

# Avalanche imports qpsolvers (for GEM-style strategies chainforget does not use), which warns on every import when
# no QP solver is installed; that line would precede every one-line `error:` message of the CLI.
warnings.filterwarnings("ignore", message="no QP solver found", category=UserWarning)
