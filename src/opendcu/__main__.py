from opendcu.cli.main import app

app()
