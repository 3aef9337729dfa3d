"""The demo world: the synthetic world (scenes, figure, motions, prompt grammar), the embedded demo
model's weights (`model/`) and its training (`train`), and the `vidtune demo` command (`command`).

Nothing in the library imports this package: it is one user of the library, like the evaluation."""
