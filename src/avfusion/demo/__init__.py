"""`avfusion demo`: a local web page where a person drops a video and sees what the model hears and sees.

`avfusion.demo.runner` does the work without any web framework: it loads the checkpoints once, says
which of classify / localize / separate / segment / embed they can do, and runs a request through
`avfusion.Pipeline` and the same writers as the `avfusion classify|localize|...` commands, in a
directory of its own under the app's temporary directory. `avfusion.demo.page` is the Gradio page
around it (the optional extra `avfusion[demo]`).
"""

DEFAULT_MAX_UPLOAD_MB = 200     # `avfusion demo --max-upload-mb`
INSTALL_HINT = "pip install 'avfusion[demo]'  (or: pip install gradio)"


def require_gradio():
    """The gradio module, or a ConfigError saying how to install it (the core package does without it)."""
    from avfusion.errors import ConfigError

    try:
        import gradio
    except ImportError as exc:
        raise ConfigError(f"`avfusion demo` needs Gradio, an optional extra: {INSTALL_HINT} ({exc})") from None
    return gradio
