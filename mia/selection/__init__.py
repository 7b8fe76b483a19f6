"""Feature selection: SHAP ranking across walk-forward folds (350 -> 150).

- :func:`forward_log_return` — the selection label (strictly after the bar).
- :func:`select_features` -> :class:`SelectionResult` — LightGBM surrogate per fold, exact
  TreeSHAP on validation rows, fold-stable rank aggregation; refuses instead of falling back.
- :func:`write_selection_report` — ``selection.json``, ``ranking.png``, ``stability.png``.

LightGBM and matplotlib are imported inside the functions that use them, so importing this
package stays cheap.
"""

from mia.selection.labels import forward_log_return
from mia.selection.report import write_selection_report
from mia.selection.shap_rank import SelectionResult, select_features

__all__ = ["SelectionResult", "forward_log_return", "select_features", "write_selection_report"]
