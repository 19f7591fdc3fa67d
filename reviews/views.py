"""Review pages (built out by the review back-office issue)."""

from django.contrib.auth.decorators import login_required
from django.http import HttpResponse


@login_required
def queue(request):
    return HttpResponse("Review queue")
