"""`vidtune serve`: the local web app (`server`: the Gradio page; `jobs`: one background run at a time)."""
