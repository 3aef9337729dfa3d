"""The method's math, beside the stage that runs it: pure functions and small torch modules, no model
loading, no run folder. The runners in `vidtune.stages` call them.

======================  =====================================================================
stage                   math
======================  =====================================================================
2 average fusion        `fusion` (x0-space fusion, learned weights), `plate` (pixel plate)
3 combined tuning       `losses` (masked noise losses, one value per sample)
4 co-denoising          `windows` (clip windows, merge weights), `clips` (each step's clips,
                        batches, noise rescheduling, background targets), `attention`
                        (cross-frame attention processors)
prompt schedules        `segments` (prompt segments and the transitions between them)
======================  =====================================================================
"""
