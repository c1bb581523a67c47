"""The kbq Slack bot (slack-bolt): ``mount_slack(app, settings)`` adds it to the FastAPI app."""

from service.slackbot.mount import mount_slack

__all__ = ["mount_slack"]
