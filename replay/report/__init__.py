"""Reports: one offline HTML file comparing runs (``html``), drawn by ``assets/charts.js``."""
