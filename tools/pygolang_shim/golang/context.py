from goroutine.context import *       # noqa: F401,F403
