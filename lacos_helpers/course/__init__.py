"""The course machinery (the method never imports it): the headless runner (``runner``), the
notebooks' first cell (``notebook``) and schedule (``schedule``), student copies (``student``),
exercise checkers (``exercises``), explorer widgets (``widgets``), plots (``plotting``), key
figures for the summary (``report``) and the environment check (``envcheck``)."""
