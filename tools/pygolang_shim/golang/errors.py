from goroutine.errors import *        # noqa: F401,F403
