import os

from flask import Flask

app = Flask(__name__)
GREETING = os.environ.get("GREETING", "Hello")


@app.get("/")
def index():
    return f"{GREETING} from paas!\n"
