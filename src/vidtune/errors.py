"""User-facing errors: one line naming the file or field and the fix; the CLI exits 2 on them."""


class VidtuneError(ValueError):
    """A problem with the user's input (file, config, model folder) that the user can fix."""
