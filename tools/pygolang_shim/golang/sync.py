from goroutine.sync import *          # noqa: F401,F403
