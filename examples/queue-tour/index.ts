// `npm run tour`: narrates the queue tour in the terminal.
import { runTour } from './tour.ts';

await runTour();
