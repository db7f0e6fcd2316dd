"""Click front end of nbnumba (installed as the ``nbnumba_cli`` package)."""
